package main

import (
	"math"
	"math/rand/v2"
	"time"
)

// firstHopMargin mirrors tokenreq's: a cached first hop signs a second hop
// only while it has more than this left.
const firstHopMargin = 5 * time.Minute

// chainedPerRefresh simulates one chained entry (a ServiceAccount whose
// pods get a target role through a second hop) over many refresh cycles,
// and returns the mean STS calls and TokenRequests per credential refresh.
//
// Every refresh makes the second hop (AssumeRole). The first hop
// (AssumeRoleWithWebIdentity, lifetime firstHopLife) is cached by the
// exchanger and reused while it has more than firstHopMargin left, so it is
// renewed only at the first refresh past firstHopLife − margin; and a
// TokenRequest is made only when a first hop is, and only if the cached
// token has passed 80 % of its lifetime less up to 10 s of jitter (the
// TokenManager's rule). Refresh intervals are U[lo, hi], as the cache draws
// them. Seeded, so the same inputs give the same output.
func chainedPerRefresh(lo, hi, firstHopLife, tokenTTL time.Duration, seed uint64) (sts, tokens float64) {
	rng := rand.New(rand.NewPCG(seed, 0x636861696e)) // "chain"
	const cycles = 200_000
	hop1Threshold := (firstHopLife - firstHopMargin).Seconds()
	tokenAt := func() float64 {
		return tokenRefreshFraction*tokenTTL.Seconds() - rng.Float64()*tokenMaxJitter.Seconds()
	}
	// When the cached first hop and token were made: never, at the start.
	now, hop1, token := 0.0, math.Inf(-1), math.Inf(-1)
	tokenLife := tokenAt()
	var hop1Calls, tokenCalls int
	for range cycles {
		if now-hop1 >= hop1Threshold {
			hop1 = now
			hop1Calls++
			if now-token >= tokenLife {
				token, tokenLife = now, tokenAt()
				tokenCalls++
			}
		}
		now += lo.Seconds() + rng.Float64()*(hi-lo).Seconds()
	}
	return 1 + float64(hop1Calls)/cycles, float64(tokenCalls) / cycles
}
