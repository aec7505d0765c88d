package server

import "encoding/json"

// maxJSONDepth is encoding/json's nesting limit: json.Valid refuses values
// nested deeper, and so does jsonScan.
const maxJSONDepth = 10000

// jsonScan validates JSON as json.Valid does (RFC 8259: strict grammar,
// bytes of 0x80 and above taken as they are in strings) in one pass, so the
// client message is checked and split into its elements by the same scan
// (splitValidArray) instead of json.Valid then a second scan.
type jsonScan struct {
	b     []byte
	depth int
	// With collect set, top gathers the elements of the outermost array
	// (depth 1), without the whitespace around them.
	collect bool
	top     []json.RawMessage
}

// splitValidArray returns the elements of msg, without the whitespace
// around them, when msg is a valid JSON array (as json.Valid and then
// json.Unmarshal into []json.RawMessage would); false otherwise. The
// elements share msg's bytes.
func splitValidArray(msg []byte) ([]json.RawMessage, bool) {
	s := jsonScan{b: msg, collect: true}
	i := s.space(0)
	if i == len(msg) || msg[i] != '[' {
		return nil, false
	}
	end, ok := s.array(i)
	if !ok || s.space(end) != len(msg) {
		return nil, false
	}
	if s.top == nil {
		return []json.RawMessage{}, true
	}
	return s.top, true
}

// jsonValid is json.Valid by jsonScan (for the tests that hold the two
// equal).
func jsonValid(b []byte) bool {
	s := jsonScan{b: b}
	end, ok := s.value(s.space(0))
	return ok && s.space(end) == len(b)
}

func (s *jsonScan) space(i int) int {
	for i < len(s.b) && (s.b[i] == ' ' || s.b[i] == '\t' || s.b[i] == '\n' || s.b[i] == '\r') {
		i++
	}
	return i
}

// value checks the value starting at i and returns the index just past it.
func (s *jsonScan) value(i int) (int, bool) {
	if i >= len(s.b) {
		return i, false
	}
	switch c := s.b[i]; {
	case c == '"':
		return s.str(i)
	case c == '{':
		return s.object(i)
	case c == '[':
		return s.array(i)
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number(i)
	}
	return i, false
}

func (s *jsonScan) literal(i int, lit string) (int, bool) {
	if len(s.b)-i < len(lit) || string(s.b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

func (s *jsonScan) str(i int) (int, bool) {
	b := s.b
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i <= 4 {
					return i, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *jsonScan) digits(i int) int {
	for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
		i++
	}
	return i
}

// number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScan) number(i int) (int, bool) {
	b := s.b
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = s.digits(i + 1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := s.digits(i + 1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := s.digits(i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func (s *jsonScan) enter() bool {
	s.depth++
	return s.depth <= maxJSONDepth
}

func (s *jsonScan) array(i int) (int, bool) {
	if !s.enter() {
		return i, false
	}
	end, ok := s.elements(i)
	s.depth--
	return end, ok
}

func (s *jsonScan) elements(i int) (int, bool) {
	i = s.space(i + 1)
	if i < len(s.b) && s.b[i] == ']' {
		return i + 1, true
	}
	for {
		end, ok := s.value(i)
		if !ok {
			return end, false
		}
		if s.collect && s.depth == 1 {
			s.top = append(s.top, json.RawMessage(s.b[i:end:end]))
		}
		i = s.space(end)
		if i == len(s.b) {
			return i, false
		}
		switch s.b[i] {
		case ']':
			return i + 1, true
		case ',':
			i = s.space(i + 1)
		default:
			return i, false
		}
	}
}

func (s *jsonScan) object(i int) (int, bool) {
	if !s.enter() {
		return i, false
	}
	end, ok := s.members(i)
	s.depth--
	return end, ok
}

func (s *jsonScan) members(i int) (int, bool) {
	i = s.space(i + 1)
	if i < len(s.b) && s.b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(s.b) || s.b[i] != '"' {
			return i, false
		}
		end, ok := s.str(i)
		if !ok {
			return end, false
		}
		i = s.space(end)
		if i == len(s.b) || s.b[i] != ':' {
			return i, false
		}
		end, ok = s.value(s.space(i + 1))
		if !ok {
			return end, false
		}
		i = s.space(end)
		if i == len(s.b) {
			return i, false
		}
		switch s.b[i] {
		case '}':
			return i + 1, true
		case ',':
			i = s.space(i + 1)
		default:
			return i, false
		}
	}
}
