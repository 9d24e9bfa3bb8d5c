// gcshort is a Go program that lives a few milliseconds: it makes five
// full collections and prints how many stop-the-world GC pauses its
// runtime counted over its whole life (runtime/metrics, which reads them
// without a pause of its own). With the argument "wait" it first says
// ready and waits for a line on stdin, so the agent can attach to its
// file before the short runs.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "wait" {
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	for range 5 {
		runtime.GC()
	}
	s := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, c := range s[0].Value.Float64Histogram().Counts {
		n += c
	}
	fmt.Println(n)
}
