package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// durationValue is a duration flag whose error says what is wrong with the
// value (a bare number needs a unit) instead of the flag package's "parse
// error".
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			return fmt.Errorf("%q needs a unit, e.g. %ss or %sm", s, s, s)
		}
		return fmt.Errorf("%q is not a duration: write it as 30s, 5m or 1h", s)
	}
	*v.d = d
	return nil
}

func durationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var(durationValue{p}, name, usage)
}
