// A tiny program for the debug file tests.
package main

import "fmt"

var version = "dev"

func main() { fmt.Println("hello", version) }
