// Command hello is a fixture for the pclntab tests: any Go program has the
// runtime's stop/start-the-world functions.
package main

import "fmt"

func main() { fmt.Println("hello") }
