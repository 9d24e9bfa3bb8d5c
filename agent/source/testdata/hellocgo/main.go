// Command hellocgo is a fixture for the pclntab tests: with one cgo file,
// the external linker puts C start-up code before Go's, so Go code no
// longer starts at .text.
package main

// static int add(int a, int b) { return a + b; }
import "C"

import "fmt"

func main() { fmt.Println(C.add(1, 2)) }
