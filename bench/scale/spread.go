package main

import (
	"math"
	"math/rand/v2"
	"slices"
)

// This file holds the pure arithmetic of the soak's refresh-time analysis,
// kept apart from the run so that it can be tested on made-up data.

// binCounts counts the times ts (seconds from an origin) in n bins of width
// seconds starting at the origin; times outside [0, n·width) are ignored.
func binCounts(ts []float64, width float64, n int) []int {
	counts := make([]int, max(n, 0))
	for _, t := range ts {
		if t < 0 {
			continue
		}
		if i := int(t / width); i < n {
			counts[i]++
		}
	}
	return counts
}

// maxOverMean returns the largest count divided by the mean count: 1 for a
// perfectly even spread, the number of bins when everything falls in one
// bin, and 0 when there are no counts.
func maxOverMean(counts []int) float64 {
	total, top := 0, 0
	for _, c := range counts {
		total += c
		top = max(top, c)
	}
	if total == 0 {
		return 0
	}
	return float64(top) / (float64(total) / float64(len(counts)))
}

// uniformMaxOverMean is the max/mean ratio that calls events thrown
// uniformly at random into bins give, averaged over trials (seeded, so the
// figure is repeatable). It is the reference for "no waves": Poisson noise
// alone makes the ratio exceed 1.
func uniformMaxOverMean(calls, bins, trials int) float64 {
	if calls <= 0 || bins <= 0 || trials <= 0 {
		return 0
	}
	rng := rand.New(rand.NewPCG(7, 11))
	counts := make([]int, bins)
	var sum float64
	for range trials {
		clear(counts)
		for range calls {
			counts[rng.IntN(bins)]++
		}
		sum += maxOverMean(counts)
	}
	return sum / float64(trials)
}

// spreadOf returns the distance between the 5th and 95th percentiles of ts
// (nearest rank), the width of the central 90 %: how far apart a set of
// events that "should" happen together actually happened.
func spreadOf(ts []float64) float64 {
	if len(ts) == 0 {
		return 0
	}
	s := slices.Clone(ts)
	slices.Sort(s)
	at := func(q float64) float64 {
		r := int(math.Ceil(q * float64(len(s))))
		return s[min(max(r, 1), len(s))-1]
	}
	return at(0.95) - at(0.05)
}

// peakBin returns the largest number of ts falling in any bin of width
// seconds (bins aligned at 0).
func peakBin(ts []float64, width float64) int {
	counts := map[int]int{}
	top := 0
	for _, t := range ts {
		i := int(math.Floor(t / width))
		counts[i]++
		top = max(top, counts[i])
	}
	return top
}
