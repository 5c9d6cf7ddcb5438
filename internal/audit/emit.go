package audit

import (
	"context"
	"encoding/json"
	"time"
)

// Appender stores a record durably; the Journal is one.
type Appender interface {
	Append(ctx context.Context, rec *Record) error
}

// Event is an action recorded outside the API middleware: the outcome of
// an asynchronous operation (a cluster's createResult, startResult), or
// something Tandem did by itself (an autoscaling resize, a scheduled run).
type Event struct {
	Category string
	Action   string
	// RequestID is the requestId of the API call that started the
	// operation, so the call and its ...Result record pair up as in
	// Databricks; empty for actions no call started (a fresh id is made).
	RequestID string
	// Identity is the user name the action is done for; empty means
	// System-User, the identity of automated actions.
	Identity string
	// Params become requestParams: sanitised and bounded by Params.
	Params map[string]any
	// StatusCode defaults to 200.
	StatusCode   int
	ErrorMessage string
	// Result, if set, is kept as the JSON response result, scrubbed.
	Result any
	// Time defaults to the emitter's clock.
	Time time.Time
}

// SystemUser is the identity of automated actions in records.
const SystemUser = "System-User"

// Emitter writes Events as records. A nil *Emitter drops them, so services
// built without auditing (unit tests) need no special case.
type Emitter struct {
	Appender   Appender
	ResourceID string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Emit writes one record for e and returns once it is durable.
func (em *Emitter) Emit(ctx context.Context, e Event) error {
	if em == nil || em.Appender == nil {
		return nil
	}
	return em.Appender.Append(ctx, em.Record(e))
}

// Record builds the record Emit writes.
func (em *Emitter) Record(e Event) *Record {
	at := e.Time
	if at.IsZero() {
		if em.Now != nil {
			at = em.Now()
		} else {
			at = time.Now()
		}
	}
	rec := New(em.ResourceID, e.Category, e.Action, at)
	rec.Identity.Email = e.Identity
	if rec.Identity.Email == "" {
		rec.Identity.Email = SystemUser
	}
	rec.Properties.RequestID = e.RequestID
	if rec.Properties.RequestID == "" {
		rec.Properties.RequestID = rec.Properties.LogID
	}
	if e.Params != nil {
		rec.Properties.RequestParams = Params(e.Params)
	}
	rec.Properties.Response.StatusCode = e.StatusCode
	if e.StatusCode == 0 {
		rec.Properties.Response.StatusCode = 200
	}
	rec.Properties.Response.ErrorMessage = e.ErrorMessage
	if e.Result != nil {
		rec.Properties.Response.Result = stringify(scrub(toJSONValue(e.Result)))
	}
	return rec
}

// toJSONValue turns a Go value into its decoded-JSON form (maps, slices),
// so that Scrub sees struct fields by their JSON names.
func toJSONValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}
