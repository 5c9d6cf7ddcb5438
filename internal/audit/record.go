// Package audit holds Tandem's diagnostic (audit) records: their schema, as
// Azure Databricks writes them; the rules that keep secrets out of them and
// bound their size; and the durable journal each record is written to before
// the API answers. Delivery to destinations reads the journal.
package audit

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

// OperationVersion is the schema version of the records.
const OperationVersion = "1.0.0"

// Record is one diagnostic record, in the shape Azure Databricks delivers to
// storage accounts and event hubs (the seed's schema; "identities" in its
// table is "identity" on the wire).
type Record struct {
	ResourceID       string     `json:"resourceId"`
	OperationVersion string     `json:"operationVersion"`
	Time             string     `json:"time"`
	Category         string     `json:"category"`
	OperationName    string     `json:"operationName"`
	Identity         Identity   `json:"identity"`
	Properties       Properties `json:"properties"`
}

// Identity names the caller.
type Identity struct {
	Email       string  `json:"email"`
	SubjectName *string `json:"subjectName"`
}

// Properties are the record's details.
type Properties struct {
	SourceIPAddress string            `json:"sourceIPAddress"`
	UserAgent       string            `json:"userAgent"`
	SessionID       *string           `json:"sessionId"`
	ServiceName     string            `json:"serviceName"`
	ActionName      string            `json:"actionName"`
	RequestID       string            `json:"requestId"`
	RequestParams   map[string]string `json:"requestParams"`
	Response        Response          `json:"response"`
	LogID           string            `json:"logId"`
}

// Response is the outcome of the request.
type Response struct {
	StatusCode   int    `json:"statusCode"`
	ErrorMessage string `json:"errorMessage,omitempty"`
	Result       string `json:"result,omitempty"`
}

// TimeFormat is the layout of Record.Time: UTC, millisecond precision.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// New returns a record for an action with its time, names and a fresh log id
// filled in. params must already be sanitised (see Params).
func New(resourceID, category, action string, at time.Time) *Record {
	return &Record{
		ResourceID:       resourceID,
		OperationVersion: OperationVersion,
		Time:             at.UTC().Format(TimeFormat),
		Category:         category,
		OperationName:    "Microsoft.Databricks/" + category + "/" + action,
		Properties: Properties{
			ServiceName:   category,
			ActionName:    action,
			RequestParams: map[string]string{},
			LogID:         uuid.NewString(),
		},
	}
}

// sensitive are field names whose values never reach a record, at any depth
// of the request or response: secret values, tokens, passwords and keys.
var sensitive = map[string]bool{
	"string_value":  true,
	"bytes_value":   true,
	"token_value":   true,
	"token":         true,
	"password":      true,
	"client_secret": true,
	"secret":        true,
	"private_key":   true,
	"key_material":  true,
	"authorization": true,
	// Event Hubs connection strings carry a shared access key.
	"connection_string": true,
}

// IsSensitive reports whether a field of that name is kept out of records.
func IsSensitive(name string) bool { return sensitive[strings.ToLower(name)] }

// Redacted replaces a sensitive value that must be shown to exist.
const Redacted = "[REDACTED]"

// Params turns a decoded JSON request body (or query) into requestParams:
// sensitive fields at any depth are removed, fields named in drop are
// removed at the top level (bulky payloads such as file contents), and every
// value becomes a string, nested values JSON-encoded, as Databricks writes
// them. The result is then bounded by Truncate.
func Params(fields map[string]any, drop ...string) map[string]string {
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		if IsSensitive(k) || contains(drop, k) {
			continue
		}
		out[k] = stringify(scrub(v))
	}
	return Truncate(out, MaxParamsBytes)
}

// Scrub removes sensitive fields at any depth of a decoded JSON value.
func Scrub(v any) any { return scrub(v) }

func scrub(v any) any {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, e := range t {
			if IsSensitive(k) {
				c[k] = Redacted
				continue
			}
			c[k] = scrub(e)
		}
		return c
	case []any:
		c := make([]any, len(t))
		for i, e := range t {
			c[i] = scrub(e)
		}
		return c
	default:
		return v
	}
}

func stringify(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return "null"
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// MaxParamsBytes is the size bound of requestParams (the seed's 100 KB rule).
const MaxParamsBytes = 100 * 1024

// TruncatedSuffix marks a value that Truncate shortened.
const TruncatedSuffix = "... truncated"

// TruncatedKey is the only key left when truncating values is not enough.
const TruncatedKey = "TRUNCATED"

// Truncate applies the 100 KB rule to requestParams: if the map's JSON is
// larger than limit, the longest values are cut, each to the same largest
// length that makes the map fit, with TruncatedSuffix appended; if the map
// still does not fit with every value cut, it becomes {"TRUNCATED": ""}.
func Truncate(params map[string]string, limit int) map[string]string {
	if encodedSize(params) <= limit {
		return params
	}
	longest := 0
	for _, v := range params {
		longest = max(longest, len(v))
	}
	cut := func(n int) map[string]string {
		out := make(map[string]string, len(params))
		for k, v := range params {
			if len(v) > n {
				v = cutUTF8(v, n) + TruncatedSuffix
			}
			out[k] = v
		}
		return out
	}
	if encodedSize(cut(0)) > limit {
		return map[string]string{TruncatedKey: ""}
	}
	// The largest cut length that fits; size grows with n, so search.
	lo, hi := 0, longest
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if encodedSize(cut(mid)) <= limit {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return cut(lo)
}

func encodedSize(m map[string]string) int {
	b, _ := json.Marshal(m)
	return len(b)
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// SortedKeys returns the keys of m in order (for stable output in tests and docs).
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
