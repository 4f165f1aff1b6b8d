package app

import (
	"flag"
	"fmt"
)

// ParseInterspersed parses args with fs, allowing flags after positional
// arguments (`pull SRC --tls-verify=false`), as podman does, and returns
// the positional arguments. "--" ends flag parsing.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// WantArgs checks the number of positional arguments of command name.
func WantArgs(name string, args []string, min, max int, usage string) error {
	if len(args) < min || (max >= 0 && len(args) > max) {
		return fmt.Errorf("%s: wrong number of arguments (%d): usage: cfs-storage %s %s", name, len(args), name, usage)
	}
	return nil
}
