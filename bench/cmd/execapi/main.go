// Command execapi runs a command in a running container again and again through
// the compute API (Open, then Exec and Wait for each run), as a program that
// drives containers does, and prints the median time of one Exec+Wait.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/hostcompute/hostcompute/compute"
)

func main() {
	id := flag.String("id", "", "container ID")
	n := flag.Int("n", 10, "runs")
	flag.Parse()
	args := flag.Args()
	ctx := context.Background()
	c, err := compute.Open(ctx, *id)
	if err != nil {
		fmt.Fprintln(os.Stderr, "execapi:", err)
		os.Exit(1)
	}
	var took []time.Duration
	for i := 0; i < *n; i++ {
		start := time.Now()
		p, err := c.Exec(ctx, &compute.ProcessSpec{Args: args})
		if err != nil {
			fmt.Fprintln(os.Stderr, "execapi: exec:", err)
			os.Exit(1)
		}
		e, err := p.Wait(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "execapi: wait:", err)
			os.Exit(1)
		}
		took = append(took, time.Since(start))
		if e.Code != 0 {
			fmt.Fprintf(os.Stderr, "execapi: %v exited %d\n", args, e.Code)
			os.Exit(1)
		}
	}
	slices.Sort(took)
	fmt.Printf("median_ns=%d\n", took[len(took)/2].Nanoseconds())
}
