package testdb

import (
	"runtime"
	"strings"
)

// JoinedFlights returns how many goroutines of the process wait in
// singleflight's Group.Do for a flight that another caller started: their
// stack is in the engine's await and in Group.Do, and not in the doCall
// that runs the flight. Only the stacks can tell, since joining a flight
// touches nothing else a test can watch; poll it (with a deadline) to know
// that a caller joined before letting the flight go on.
func JoinedFlights() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "engine.(*Engine).await(") && strings.Contains(g, "singleflight.(*Group).Do(") &&
			!strings.Contains(g, "singleflight.(*Group).doCall(") {
			n++
		}
	}
	return n
}
