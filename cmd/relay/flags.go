package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// envFlags is a flag set whose flags each have an environment twin: a flag
// given on the command line wins, otherwise the variable is used, otherwise
// the default.
type envFlags struct {
	fs   *flag.FlagSet
	envs map[string]string // flag name -> variable
	// bad is the first value a flag refused during parse, so the error
	// names the flag, the value and the form wanted, once (the flag
	// package's own message says only "parse error", and it printed the
	// whole usage besides).
	bad *badValue
	// sections group the flags in --help by topic, in the order defined;
	// deprecated maps a flag to an older variable still read for it.
	sections   []flagSection
	deprecated map[string]string
}

// flagSection is a topic of --help and the flags defined under it.
type flagSection struct {
	title string
	names []string
}

// section starts a topic: the flags defined next are listed under title.
func (e *envFlags) section(title string) {
	e.sections = append(e.sections, flagSection{title: title})
}

// deprecate makes flag name also read from an older variable, when its
// own is unset.
func (e *envFlags) deprecate(name, oldEnv string) {
	if e.deprecated == nil {
		e.deprecated = map[string]string{}
	}
	e.deprecated[name] = oldEnv
}

// badValue is a value a flag refused.
type badValue struct {
	flag, env, value, want string
}

func (b *badValue) Error() string {
	if b.env != "" {
		return fmt.Sprintf("%s=%q (for --%s): want %s", b.env, b.value, b.flag, b.want)
	}
	return fmt.Sprintf("--%s %q: want %s", b.flag, b.value, b.want)
}

func newEnvFlags(name string) *envFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are returned, once, to the caller, which prints them; the
	// usage is printed only when asked for (--help).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &envFlags{fs: fs, envs: map[string]string{}}
}

// envName is the variable twin of a flag: --max-limit -> RELAY_MAX_LIMIT.
func envName(flagName string) string {
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// twin records the environment twin of the flag just defined.
func (e *envFlags) twin(name string) {
	e.envs[name] = envName(name)
	e.inSection(name)
}

func (e *envFlags) inSection(name string) {
	if n := len(e.sections); n > 0 {
		e.sections[n-1].names = append(e.sections[n-1].names, name)
	}
}

// typed defines a flag whose value parse reads, with a text saying what it
// wants when it refuses one.
func typed[T any](e *envFlags, p *T, name string, def T, usage, want string, parse func(string) (T, error), format func(T) string) {
	*p = def
	e.fs.Var(&typedValue[T]{e: e, name: name, p: p, want: want, parse: parse, format: format}, name, usage)
	e.twin(name)
}

type typedValue[T any] struct {
	e      *envFlags
	name   string
	p      *T
	want   string
	parse  func(string) (T, error)
	format func(T) string
}

func (v *typedValue[T]) String() string {
	if v.p == nil { // the flag package's zero-value probe
		return ""
	}
	return v.format(*v.p)
}

func (v *typedValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		if v.e.bad == nil {
			v.e.bad = &badValue{flag: v.name, value: s, want: v.want}
		}
		return err
	}
	*v.p = x
	return nil
}

func (e *envFlags) String(p *string, name, def, usage string) {
	e.fs.StringVar(p, name, def, usage)
	e.twin(name)
}

func (e *envFlags) Int(p *int, name string, def int, usage string) {
	typed(e, p, name, def, usage, "a whole number", func(s string) (int, error) {
		n, err := strconv.ParseInt(s, 0, strconv.IntSize)
		return int(n), err
	}, strconv.Itoa)
}

func (e *envFlags) Float64(p *float64, name string, def float64, usage string) {
	typed(e, p, name, def, usage, "a number", func(s string) (float64, error) {
		return strconv.ParseFloat(s, 64)
	}, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) })
}

func (e *envFlags) Bool(p *bool, name string, def bool, usage string) {
	*p = def
	e.fs.Var(&boolValue{typedValue[bool]{e: e, name: name, p: p, want: "true or false", parse: strconv.ParseBool, format: strconv.FormatBool}}, name, usage)
	e.twin(name)
}

// boolValue lets a bool flag stand alone (--keypackage-handout).
type boolValue struct{ typedValue[bool] }

func (b *boolValue) IsBoolFlag() bool { return true }

func (e *envFlags) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	typed(e, p, name, def, usage, "a duration such as 90d, 12h, 30m or 10s (0 where the flag allows it)", parseDuration, formatDuration)
}

// parseDuration reads a Go duration, with days too ("90d", "1d12h"):
// operators write retention in days.
func parseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseUint(days, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("days %q: %w", days, err)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	r, err := time.ParseDuration(rest)
	if err != nil || r < 0 {
		return 0, fmt.Errorf("after the days: %q", rest)
	}
	return d + r, nil
}

// formatDuration writes whole days as days (2160h is 90d), anything else
// as Go does without zero units at the end (15m, not 15m0s).
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Var defines a flag parsed by v, whose variable is env.
func (e *envFlags) Var(v flag.Value, name, env, usage string) {
	e.fs.Var(v, name, usage)
	e.envs[name] = env
	e.inSection(name)
}

// parse reads args, then fills every flag not given on the command line from
// its variable. lookup is os.LookupEnv outside tests.
func (e *envFlags) parse(args []string, lookup func(string) (string, bool)) error {
	if err := e.fs.Parse(args); err != nil {
		if e.bad != nil {
			return e.bad
		}
		return err
	}
	if e.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", e.fs.Arg(0))
	}
	given := map[string]bool{}
	e.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, env := range e.envs {
		if given[name] {
			continue
		}
		v, ok := lookup(env)
		if old, has := e.deprecated[name]; !ok && has {
			if v, ok = lookup(old); ok {
				env = old
			}
		}
		if !ok {
			continue
		}
		if err := e.fs.Set(name, v); err != nil {
			if e.bad != nil {
				e.bad.env = env
				return e.bad
			}
			return fmt.Errorf("%s=%q: %w", env, v, err)
		}
	}
	return nil
}

// usage prints a synopsis and every flag with its variable and default,
// by topic when the flags were defined under sections.
func (e *envFlags) usage(w io.Writer, synopsis string) {
	fmt.Fprintln(w, synopsis)
	one := func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%s", f.Name)
		if env, ok := e.envs[f.Name]; ok {
			fmt.Fprintf(w, "  (env %s)", env)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "        %s", f.Usage)
		if old, ok := e.deprecated[f.Name]; ok {
			fmt.Fprintf(w, "; %s is read too (deprecated)", old)
		}
		if f.DefValue != "" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	}
	if len(e.sections) == 0 {
		fmt.Fprintln(w)
		e.fs.VisitAll(one)
		return
	}
	for _, sec := range e.sections {
		fmt.Fprintf(w, "\n%s:\n", sec.title)
		for _, name := range sec.names {
			one(e.fs.Lookup(name))
		}
	}
}
