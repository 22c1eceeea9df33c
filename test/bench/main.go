// Command bench prints the figures `make bench` reports that Go benchmarks
// cannot: gitsource against the git CLI on generated repositories (time and
// peak RSS, side by side), and the agent's memory and reaction latency as a
// user runs it, and what thousands of running VMIs cost it.
//
//	go run ./test/bench [-sizes small,medium,large,refs100k] [-runs 7] [-skip-git] [-skip-fleet] [-fleet-sizes 10,100,1000] [-skip-agent] [-vmis 100,1000,10000]
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	child := flag.String("child", "", "internal: run one measured gitsource operation")
	sizes := flag.String("sizes", "small,medium,large", "repository sizes to generate")
	runs := flag.Int("runs", 7, "runs per measurement (the median is reported)")
	skipGit := flag.Bool("skip-git", false, "skip the gitsource benchmark")
	skipAgent := flag.Bool("skip-agent", false, "skip the agent figures")
	skipFleet := flag.Bool("skip-fleet", false, "skip the fleet's status writers and the fleet simulator")
	fleetSizes := flag.String("fleet-sizes", "10,100,1000", "fleet sizes for the fleet simulator")
	vmis := flag.String("vmis", "100,1000,10000", "VMI counts for the workload figures (\"\" skips them)")
	flag.Parse()
	if *child != "" {
		os.Exit(runChild(*child, flag.Args()))
	}
	if !*skipGit {
		if err := benchGit(strings.Split(*sizes, ","), *runs); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if !*skipFleet {
		if err := benchFleet([]int{10, 50, 100}, 3); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		var sizes []int
		for _, c := range strings.Split(*fleetSizes, ",") {
			n, err := strconv.Atoi(c)
			if err != nil || n < 3 {
				fmt.Fprintln(os.Stderr, "bench: -fleet-sizes: not a fleet size (at least 3):", c)
				os.Exit(2)
			}
			sizes = append(sizes, n)
		}
		if err := benchFleetScale(sizes, 20); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if !*skipAgent {
		if err := benchAgent(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if *vmis != "" {
		var counts []int
		for _, c := range strings.Split(*vmis, ",") {
			n, err := strconv.Atoi(c)
			if err != nil || n <= 0 {
				fmt.Fprintln(os.Stderr, "bench: -vmis: not a count:", c)
				os.Exit(2)
			}
			counts = append(counts, n)
		}
		if err := benchWorkloads(counts); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}
