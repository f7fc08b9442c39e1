//go:build floor_nosts

package main

// initSTS: this variant links no STS client.
func initSTS() {}
