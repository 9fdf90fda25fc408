package enrich

import "testing"

// TestSizerFindsTheLimit drives the sizer the way runBatch does against a service that takes at
// most limit records: too large → split (the halves are answered if they fit), else answered.
func TestSizerFindsTheLimit(t *testing.T) {
	for _, limit := range []int{1, 2, 7, 10, 25, 49, 50, 80} {
		s := newSizer(50)
		var send func(n int)
		send = func(n int) {
			if n <= limit {
				s.answered(n)
				return
			}
			if n == 1 {
				return
			}
			h := n / 2
			send(h)
			send(n - h)
			if h <= limit && n-h <= limit {
				s.split(n)
			}
		}
		for range 20 {
			send(s.size())
		}
		if want := min(limit, 50); s.size() != want {
			t.Errorf("service limit %d: learned %d, want %d", limit, s.size(), want)
		}
	}
}

func TestSizerIgnoresBadRecords(t *testing.T) {
	s := newSizer(50)
	// 50 refused for one bad record: 25 answered, 25 refused; 12 answered, 13 refused; ... 1 refused.
	s.answered(25)
	s.answered(12)
	s.answered(6)
	s.answered(3)
	s.answered(1)
	if s.size() != 50 {
		t.Errorf("after isolating a bad record: size %d, want the ceiling 50", s.size())
	}
}
