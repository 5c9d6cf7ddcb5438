package replication

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/tandemdata/tandem/internal/api"
)

// TestReceivingTakesObjectsOnlyUnderItsOwnKeyAndOnlyWhileFollowing: the
// geo-replicated writes of the peer land in a region's account only while
// the region does not lead and only when they are sealed under the
// region's own account key.
func TestReceivingTakesObjectsOnlyUnderItsOwnKeyAndOnlyWhileFollowing(t *testing.T) {
	cases := []struct {
		name       string
		role       string
		mine, sent string
		ok         bool
	}{
		{"a follower takes objects under its key", "passive", "k1", "k1", true},
		{"a sealed former leader takes them too", "sealed", "k1", "k1", true},
		{"an active region takes none", "active", "k1", "k1", false},
		{"a draining region takes none", "draining", "k1", "k1", false},
		{"another account key is refused", "passive", "k1", "k2", false},
		{"a sender that names no key is taken (older peer)", "passive", "k1", "", true},
		{"a receiver without an account key takes them", "passive", "", "k2", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Service{Self: func() LeaderInfo { return LeaderInfo{Region: "r", Role: c.role} },
				ObjectsKey: func() string { return c.mine }}
			hr := httptest.NewRequest("PUT", ObjectsPath+"?name=x", nil)
			if c.sent != "" {
				hr.Header.Set(HeaderAccountKey, c.sent)
			}
			err := s.receiving(&api.Request{HTTP: hr})
			if (err == nil) != c.ok {
				t.Fatalf("receiving = %v, want ok %v", err, c.ok)
			}
			var ae *api.Error
			if err != nil && (!errors.As(err, &ae) || ae.Code != api.InvalidState) {
				t.Errorf("error %v is not INVALID_STATE", err)
			}
		})
	}
}
