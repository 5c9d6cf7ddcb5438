package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Error codes Tandem answers with. They are Databricks' codes: clients such
// as the Go SDK branch on them (errors.Is(err, databricks.ErrResourceDoesNotExist)).
const (
	InvalidParameterValue   = "INVALID_PARAMETER_VALUE"
	MalformedRequest        = "MALFORMED_REQUEST"
	BadRequest              = "BAD_REQUEST"
	InvalidState            = "INVALID_STATE"
	ResourceDoesNotExist    = "RESOURCE_DOES_NOT_EXIST"
	ResourceAlreadyExists   = "RESOURCE_ALREADY_EXISTS"
	ResourceConflict        = "RESOURCE_CONFLICT"
	ResourceLimitExceeded   = "RESOURCE_LIMIT_EXCEEDED"
	QuotaExceeded           = "QUOTA_EXCEEDED"
	PermissionDenied        = "PERMISSION_DENIED"
	Unauthenticated         = "UNAUTHENTICATED"
	EndpointNotFound        = "ENDPOINT_NOT_FOUND"
	DirectoryNotEmpty       = "DIRECTORY_NOT_EMPTY"
	IOError                 = "IO_ERROR"
	MaxBlockSizeExceeded    = "MAX_BLOCK_SIZE_EXCEEDED"
	MaxReadSizeExceeded     = "MAX_READ_SIZE_EXCEEDED"
	MaxNotebookSizeExceeded = "MAX_NOTEBOOK_SIZE_EXCEEDED"
	RequestTooLarge         = "REQUEST_ENTITY_TOO_LARGE"
	FeatureDisabled         = "FEATURE_DISABLED"
	NotImplemented          = "NOT_IMPLEMENTED"
	TemporarilyUnavailable  = "TEMPORARILY_UNAVAILABLE"
	DeadlineExceeded        = "DEADLINE_EXCEEDED"
	Cancelled               = "CANCELLED"
	InternalError           = "INTERNAL_ERROR"
	DataLoss                = "DATA_LOSS"
)

// statusOf is the HTTP status of each code, as Databricks answers it. DBFS
// and workspace calls answer some codes with 400 where the generic status is
// 409; those handlers set the status on the error (WithStatus).
var statusOf = map[string]int{
	InvalidParameterValue:   http.StatusBadRequest,
	MalformedRequest:        http.StatusBadRequest,
	BadRequest:              http.StatusBadRequest,
	InvalidState:            http.StatusBadRequest,
	ResourceDoesNotExist:    http.StatusNotFound,
	ResourceAlreadyExists:   http.StatusConflict,
	ResourceConflict:        http.StatusConflict,
	ResourceLimitExceeded:   http.StatusBadRequest,
	QuotaExceeded:           http.StatusBadRequest,
	PermissionDenied:        http.StatusForbidden,
	Unauthenticated:         http.StatusUnauthorized,
	EndpointNotFound:        http.StatusNotFound,
	DirectoryNotEmpty:       http.StatusBadRequest,
	IOError:                 http.StatusBadRequest,
	MaxBlockSizeExceeded:    http.StatusBadRequest,
	MaxReadSizeExceeded:     http.StatusBadRequest,
	MaxNotebookSizeExceeded: http.StatusBadRequest,
	RequestTooLarge:         http.StatusRequestEntityTooLarge,
	FeatureDisabled:         http.StatusBadRequest,
	NotImplemented:          http.StatusNotImplemented,
	TemporarilyUnavailable:  http.StatusServiceUnavailable,
	DeadlineExceeded:        http.StatusGatewayTimeout,
	Cancelled:               499,
	InternalError:           http.StatusInternalServerError,
	DataLoss:                http.StatusInternalServerError,
}

// Error is the one error model of the API: the Databricks error body
// {"error_code", "message"} and its HTTP status.
type Error struct {
	Code    string
	Message string
	Status  int
	cause   error
	header  http.Header
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the internal error the API error was made from, if any.
func (e *Error) Unwrap() error { return e.cause }

// WithStatus returns a copy of e answered with another HTTP status.
func (e *Error) WithStatus(status int) *Error {
	c := *e
	c.Status = status
	return &c
}

// WithHeader returns a copy of e answered with an extra response header
// (a refusal that a proxy in front of the region acts on).
func (e *Error) WithHeader(key, value string) *Error {
	c := *e
	c.header = c.header.Clone()
	if c.header == nil {
		c.header = http.Header{}
	}
	c.header.Set(key, value)
	return &c
}

// Errorf makes an API error with the code's status and a formatted message.
// The message is shown to the caller: it says what was wrong and never
// carries a secret.
func Errorf(code, format string, args ...any) *Error {
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusBadRequest
	}
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Status: status}
}

// Wrap makes an API error that also wraps cause, so that errors.Is still
// sees the internal error (for logs and tests) while the caller sees only
// the message.
func Wrap(cause error, code, format string, args ...any) *Error {
	e := Errorf(code, format, args...)
	e.cause = cause
	return e
}

// InvalidParam is the error for a parameter with a bad value.
func InvalidParam(format string, args ...any) *Error {
	return Errorf(InvalidParameterValue, format, args...)
}

// MissingField is the error for a required field that is absent or empty.
func MissingField(name string) *Error {
	return Errorf(InvalidParameterValue, "Missing required field: %s", name)
}

// NotFound is the error for a missing object.
func NotFound(format string, args ...any) *Error {
	return Errorf(ResourceDoesNotExist, format, args...)
}

// Denied is the error for a caller without the permission an action needs.
func Denied(format string, args ...any) *Error {
	return Errorf(PermissionDenied, format, args...)
}

// sentinels maps the internal errors that callers branch on to wire errors.
// It is the only place where an internal error becomes an error code.
// An empty message uses the error's own text, for errors whose text is
// written for the caller (key errors name the key, never its material).
var sentinels = []struct {
	err     error
	code    string
	message string
	status  int
}{
	{store.ErrNotFound, ResourceDoesNotExist, "The requested resource does not exist.", 0},
	{storage.ErrNotFound, ResourceDoesNotExist, "The object's contents are missing from the storage account.", 0},
	{storage.ErrNoSpace, IOError, "The storage account is out of space; nothing was written.", http.StatusInsufficientStorage},
	{keys.ErrKeyDisabled, PermissionDenied, "", 0},
	{keys.ErrKeyNotFound, PermissionDenied, "", 0},
	{keys.ErrKeyAccessDenied, PermissionDenied, "", 0},
	{keys.ErrKeyUnavailable, TemporarilyUnavailable, "", 0},
	{storage.ErrUnavailable, TemporarilyUnavailable, "", 0},
	{storage.ErrCorrupt, DataLoss, "The object is corrupt in every copy of the storage account.", 0},
	{storage.ErrReadOnly, InvalidState, "", 0},
	{storage.ErrInvalidName, InvalidParameterValue, "", 0},
	{store.ErrExists, ResourceAlreadyExists, "The resource already exists.", 0},
	{store.ErrReadOnly, InvalidState, "This region does not accept writes.", 0},
	{context.DeadlineExceeded, DeadlineExceeded, "The request took too long.", 0},
	{context.Canceled, Cancelled, "The request was cancelled.", 0},
}

// ErrorOf turns any error into the API error the caller sees. An unknown
// error becomes INTERNAL_ERROR without its text, which may hold details that
// are not the caller's business; the server logs it with the request id.
func ErrorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Status == 0 {
			e = e.WithStatus(statusOf[e.Code])
		}
		return e
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			msg := s.message
			if msg == "" {
				msg = err.Error()
			}
			e := Wrap(err, s.code, "%s", msg)
			if s.status != 0 {
				e.Status = s.status
			}
			return e
		}
	}
	return Wrap(err, InternalError, "Internal error; the server log has the details under this request's id.")
}
