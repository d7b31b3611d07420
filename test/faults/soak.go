package faults

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// soakEnv names the environment variable that turns the soak on: any true
// value ("1", "yes", "true") multiplies the suite's traffic phases and fault
// repetitions by defaultSoak; an integer of 2 or more by that integer.
const soakEnv = "PARLEY_FAULTS_SOAK"

const defaultSoak = 10

var soakOnce = sync.OnceValue(func() int {
	v := strings.TrimSpace(strings.ToLower(os.Getenv(soakEnv)))
	switch v {
	case "", "0", "no", "false", "off":
		return 1
	case "1", "yes", "true", "on":
		return defaultSoak
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 2 {
		return n
	}
	return defaultSoak
})

// soak is the multiplier of traffic phases and repetitions: 1 unless the
// soak is on.
func soak() int { return soakOnce() }

// phase is a traffic phase of d, multiplied under the soak. Fault
// durations themselves (a stall of 8 s, a blackhole of 6 s) are never
// multiplied: they are what the scenario is about.
func phase(d time.Duration) time.Duration { return d * time.Duration(soak()) }

// reps is a number of fault repetitions, multiplied under the soak.
func reps(n int) int { return n * soak() }
