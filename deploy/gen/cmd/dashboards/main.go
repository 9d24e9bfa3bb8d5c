// Command dashboards writes pausewatch's Grafana dashboards as JSON into a
// directory (make dashboards: the chart's files/dashboards/).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pausewatch/pausewatch/deploy/gen/dashboards"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboards DIR")
		os.Exit(2)
	}
	for _, d := range dashboards.All() {
		b, err := dashboards.JSON(d.Builder)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dashboard %s: %v\n", d.Name, err)
			os.Exit(1)
		}
		if err := os.WriteFile(filepath.Join(os.Args[1], d.Name+".json"), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
