package v1alpha1

import "testing"

func TestRequestRatePerSecond(t *testing.T) {
	cases := []struct {
		rate RequestRate
		want float64
	}{
		{RequestRate{Requests: 10, Unit: RateLimitUnitSecond}, 10},
		{RequestRate{Requests: 120, Unit: RateLimitUnitMinute}, 2},
		{RequestRate{Requests: 7200, Unit: RateLimitUnitHour}, 2},
		{RequestRate{Requests: 86400, Unit: RateLimitUnitDay}, 1},
		{RequestRate{Requests: 5, Unit: "Fortnight"}, 0},
	}
	for _, c := range cases {
		if got := c.rate.PerSecond(); got != c.want {
			t.Errorf("%d per %s = %v/s, want %v/s", c.rate.Requests, c.rate.Unit, got, c.want)
		}
	}
	rule := RateLimitRule{By: RateLimitKeyGlobal, Requests: 60, Unit: RateLimitUnitMinute}
	if got := rule.Rate().PerSecond(); got != 1 {
		t.Errorf("rule rate = %v/s, want 1/s", got)
	}
}
