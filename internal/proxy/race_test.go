//go:build race

package proxy

// raceDetector is set when the tests run with -race, which doubles stacks
// and adds shadow memory to every figure a test measures.
const raceDetector = true
