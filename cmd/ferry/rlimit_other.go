//go:build !unix

package main

// openFileLimit is unknown here: the default caps apply.
func openFileLimit() int { return 0 }
