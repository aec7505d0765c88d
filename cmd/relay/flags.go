package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// envFlags is a flag set whose flags each have an environment twin: a flag
// given on the command line wins, otherwise the variable is used, otherwise
// the default.
type envFlags struct {
	fs   *flag.FlagSet
	envs map[string]string // flag name -> variable
}

func newEnvFlags(name string, stderr io.Writer) *envFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &envFlags{fs: fs, envs: map[string]string{}}
}

// envName is the variable twin of a flag: --max-limit -> RELAY_MAX_LIMIT.
func envName(flagName string) string {
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// twin records the environment twin of the flag just defined.
func (e *envFlags) twin(name string) { e.envs[name] = envName(name) }

func (e *envFlags) String(p *string, name, def, usage string) {
	e.fs.StringVar(p, name, def, usage)
	e.twin(name)
}

func (e *envFlags) Int(p *int, name string, def int, usage string) {
	e.fs.IntVar(p, name, def, usage)
	e.twin(name)
}

func (e *envFlags) Float64(p *float64, name string, def float64, usage string) {
	e.fs.Float64Var(p, name, def, usage)
	e.twin(name)
}

func (e *envFlags) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	e.fs.DurationVar(p, name, def, usage)
	e.twin(name)
}

// Var defines a flag parsed by v, whose variable is env.
func (e *envFlags) Var(v flag.Value, name, env, usage string) {
	e.fs.Var(v, name, usage)
	e.envs[name] = env
}

// parse reads args, then fills every flag not given on the command line from
// its variable. lookup is os.LookupEnv outside tests.
func (e *envFlags) parse(args []string, lookup func(string) (string, bool)) error {
	if err := e.fs.Parse(args); err != nil {
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
		if !ok {
			continue
		}
		if err := e.fs.Set(name, v); err != nil {
			return fmt.Errorf("%s=%q: %w", env, v, err)
		}
	}
	return nil
}

// usage prints a synopsis and every flag with its variable and default.
func (e *envFlags) usage(w io.Writer, synopsis string) {
	fmt.Fprintln(w, synopsis)
	fmt.Fprintln(w)
	e.fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%s", f.Name)
		if env, ok := e.envs[f.Name]; ok {
			fmt.Fprintf(w, "  (env %s)", env)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "        %s", f.Usage)
		if f.DefValue != "" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
