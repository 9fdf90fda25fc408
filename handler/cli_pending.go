package main

import (
	"context"
	"fmt"
	"io"
)

func cmdBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dvbulk bench: not built yet")
	return 1
}
