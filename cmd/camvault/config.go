package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// configFlag is the flag that names a command's configuration file.
const configFlag = "config"

// maxConfigSize bounds what is read of a configuration file: a few
// dozen keys fit in a fraction of it.
const maxConfigSize = 1 << 20

// parseWithConfig parses a command's flags (no positional arguments),
// then takes every flag not given on the command line from the YAML file
// --config names, if any. The file's keys are the flag names, so every
// flag has one, and each value goes through the flag's own Set: one
// conversion and one validation whichever way a value comes, and the
// command line always wins. Secrets stay out of the file because no flag
// takes one (they come from files and the environment the flags name).
func parseWithConfig(fl *flag.FlagSet, args []string) error {
	path := fl.String(configFlag, "", "YAML file of flag values, one key per flag (rtsp: \":8554\"); flags on the command line override it")
	if err := noArgs(fl, args); err != nil {
		return err
	}
	if *path == "" {
		return nil
	}
	return applyConfigFile(fl, *path)
}

// applyConfigFile reads path and applies it to fl (see applyConfig).
func applyConfigFile(fl *flag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return usagef("--config: read %s: %v", path, err)
	}
	if len(b) > maxConfigSize {
		return usagef("--config: %s is larger than %d bytes", path, maxConfigSize)
	}
	return applyConfig(fl, path, b)
}

// applyConfig sets, from the YAML mapping in data, every flag of fl not
// already set on the command line. Every error is a usage error naming
// the file, the line and the key.
func applyConfig(fl *flag.FlagSet, name string, data []byte) error {
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return usagef("config %s: %v", name, err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return usagef("config %s: more than one YAML document: keep every key in one mapping", name)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return usagef("config %s line %d: want a mapping of flag names to values (rtsp: \":8554\")", name, root.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return usagef("config %s line %d: a key must be a flag name", name, k.Line)
		}
		key := k.Value
		if line, dup := seen[key]; dup {
			return usagef("config %s line %d: key %q already given on line %d", name, k.Line, key, line)
		}
		seen[key] = k.Line
		f := fl.Lookup(key)
		if f == nil || key == configFlag {
			return usagef("config %s line %d: unknown key %q: the keys are %s's flags (camvault %s --help)", name, k.Line, key, fl.Name(), fl.Name())
		}
		values, err := configValues(f, v)
		if err != nil {
			return usagef("config %s line %d: key %q: %v", name, v.Line, key, err)
		}
		if set[key] {
			continue // the command line overrides the file
		}
		for _, item := range values {
			if err := fl.Set(key, item.Value); err != nil {
				return usagef("config %s line %d: key %q: invalid value %q: %v", name, item.Line, key, item.Value, err)
			}
		}
	}
	return nil
}

// configValues returns the scalar values of v for flag f: one, or for a
// repeatable flag (webhook) one per item of a list.
func configValues(f *flag.Flag, v *yaml.Node) ([]*yaml.Node, error) {
	if _, repeatable := f.Value.(*listFlag); repeatable && v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			if !isValue(item) {
				return nil, fmt.Errorf("line %d: want a list of single values", item.Line)
			}
		}
		return v.Content, nil
	}
	if !isValue(v) {
		return nil, errors.New("want a single value (a string, number, boolean or duration such as 10s)")
	}
	return []*yaml.Node{v}, nil
}

// isValue reports whether n is a scalar other than null: a key left
// empty is a mistake, not a way to reset a flag.
func isValue(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag != "!!null"
}
