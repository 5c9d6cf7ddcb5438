package compute

import (
	"context"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// GetEvents is the events request; next_page repeats it for the next page.
type GetEvents struct {
	ClusterID  string   `json:"cluster_id"`
	StartTime  int64    `json:"start_time,omitempty"`
	EndTime    int64    `json:"end_time,omitempty"`
	EventTypes []string `json:"event_types,omitempty"`
	Order      string   `json:"order,omitempty"`
	Offset     int64    `json:"offset,omitempty"`
	Limit      int64    `json:"limit,omitempty"`
	PageSize   int      `json:"page_size,omitempty"`
	PageToken  string   `json:"page_token,omitempty"`
}

// pageEvents filters, orders and pages a cluster's events (given oldest
// first). It is pure: it returns the page, the request for the next page
// (nil at the end) and the number of events that match.
func pageEvents(all []Event, r GetEvents) ([]Event, *GetEvents, int, error) {
	if r.Order != "" && r.Order != "ASC" && r.Order != "DESC" {
		return nil, nil, 0, api.InvalidParam("order must be ASC or DESC, got %q.", r.Order)
	}
	if r.Limit < 0 || r.Limit > 500 {
		return nil, nil, 0, api.InvalidParam("limit must be between 1 and 500, got %d.", r.Limit)
	}
	if r.PageSize < 0 || r.PageSize > 500 {
		return nil, nil, 0, api.InvalidParam("page_size must be between 0 and 500, got %d.", r.PageSize)
	}
	if r.Offset < 0 {
		return nil, nil, 0, api.InvalidParam("offset must not be negative.")
	}
	for _, t := range r.EventTypes {
		if !contains(EventTypes, t) {
			return nil, nil, 0, api.InvalidParam("Unknown event type %s.", t)
		}
	}
	if r.StartTime > 0 && r.EndTime > 0 && r.StartTime > r.EndTime {
		return nil, nil, 0, api.InvalidParam("start_time must not be after end_time.")
	}
	offset := int(r.Offset)
	if r.PageToken != "" {
		var err error
		if offset, err = decodeToken(r.PageToken); err != nil {
			return nil, nil, 0, err
		}
	}
	var match []Event
	for _, e := range all {
		if r.StartTime > 0 && e.Timestamp < r.StartTime || r.EndTime > 0 && e.Timestamp > r.EndTime {
			continue
		}
		if len(r.EventTypes) > 0 && !contains(r.EventTypes, e.Type) {
			continue
		}
		match = append(match, e)
	}
	if r.Order != "ASC" {
		for i, j := 0, len(match)-1; i < j; i, j = i+1, j-1 {
			match[i], match[j] = match[j], match[i]
		}
	}
	size := r.PageSize
	if size == 0 {
		size = int(r.Limit)
	}
	if size == 0 {
		size = 50
	}
	if offset >= len(match) {
		return []Event{}, nil, len(match), nil
	}
	end := min(len(match), offset+size)
	page := match[offset:end]
	var next *GetEvents
	if end < len(match) {
		n := r
		n.PageToken = ""
		n.Offset = int64(end)
		if n.PageSize == 0 && n.Limit == 0 {
			n.Limit = int64(size)
		}
		next = &n
	}
	return page, next, len(match), nil
}

func (s *Service) events(ctx context.Context, req *api.Request) (any, error) {
	var r GetEvents
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	var all []Event
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanAttachTo); err != nil {
			return err
		}
		var err error
		all, err = store.List[Event](tx, kindEvent, r.ClusterID+"/")
		return err
	})
	if err != nil {
		return nil, err
	}
	page, next, total, err := pageEvents(all, r)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"events": page, "total_count": total}
	if next != nil {
		resp["next_page"] = next
		resp["next_page_token"] = encodeToken(int(next.Offset))
	}
	return resp, nil
}

// Events returns a cluster's events, oldest first (for other services and
// tests).
func (s *Service) Events(ctx context.Context, clusterID string) ([]Event, error) {
	var out []Event
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = store.List[Event](tx, kindEvent, clusterID+"/")
		return err
	})
	return out, err
}
