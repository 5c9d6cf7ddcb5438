// Package destination holds what the audit destinations share: the wire
// form of a record as Azure Databricks delivers it to storage accounts and
// event hubs. The destinations themselves live in subpackages
// (storageaccount, eventhub, loganalytics).
//
// What each destination carries, and why:
//
//   - storage account and event hub: the Azure wire form. Real Azure
//     Databricks records carry identity, properties.requestParams and
//     properties.response as JSON-encoded strings inside the record
//     (Overwatch and Databricks' own Event Hubs notebooks call from_json on
//     those three fields), so consumers written for Azure read Tandem's
//     files and messages unchanged. Every other field is as in audit.Record.
//   - log analytics (the query store): the structured record (audit.Record,
//     with identity, requestParams and response as objects), as Azure
//     Monitor's resource-specific tables type them (dynamic columns); the
//     query API answers with it.
package destination

import (
	"encoding/json"

	"github.com/tandemdata/tandem/internal/audit"
)

// wireRecord is audit.Record with its nested fields JSON-encoded.
type wireRecord struct {
	ResourceID       string         `json:"resourceId"`
	OperationVersion string         `json:"operationVersion"`
	Time             string         `json:"time"`
	Category         string         `json:"category"`
	OperationName    string         `json:"operationName"`
	Identity         string         `json:"identity"`
	Properties       wireProperties `json:"properties"`
}

type wireProperties struct {
	SourceIPAddress string  `json:"sourceIPAddress"`
	UserAgent       string  `json:"userAgent"`
	SessionID       *string `json:"sessionId"`
	ServiceName     string  `json:"serviceName"`
	ActionName      string  `json:"actionName"`
	RequestID       string  `json:"requestId"`
	RequestParams   string  `json:"requestParams"`
	Response        string  `json:"response"`
	LogID           string  `json:"logId"`
}

// Wire returns the record in Azure's wire form (one JSON object, no newline).
func Wire(r *audit.Record) ([]byte, error) {
	identity, err := json.Marshal(r.Identity)
	if err != nil {
		return nil, err
	}
	params := r.Properties.RequestParams
	if params == nil {
		params = map[string]string{}
	}
	rp, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	resp, err := json.Marshal(r.Properties.Response)
	if err != nil {
		return nil, err
	}
	return json.Marshal(wireRecord{
		ResourceID:       r.ResourceID,
		OperationVersion: r.OperationVersion,
		Time:             r.Time,
		Category:         r.Category,
		OperationName:    r.OperationName,
		Identity:         string(identity),
		Properties: wireProperties{
			SourceIPAddress: r.Properties.SourceIPAddress,
			UserAgent:       r.Properties.UserAgent,
			SessionID:       r.Properties.SessionID,
			ServiceName:     r.Properties.ServiceName,
			ActionName:      r.Properties.ActionName,
			RequestID:       r.Properties.RequestID,
			RequestParams:   string(rp),
			Response:        string(resp),
			LogID:           r.Properties.LogID,
		},
	})
}

// FromWire decodes a record in Azure's wire form (for tests and tools that
// read delivered files back).
func FromWire(b []byte) (*audit.Record, error) {
	var w wireRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	r := &audit.Record{
		ResourceID: w.ResourceID, OperationVersion: w.OperationVersion, Time: w.Time,
		Category: w.Category, OperationName: w.OperationName,
		Properties: audit.Properties{
			SourceIPAddress: w.Properties.SourceIPAddress, UserAgent: w.Properties.UserAgent,
			SessionID: w.Properties.SessionID, ServiceName: w.Properties.ServiceName,
			ActionName: w.Properties.ActionName, RequestID: w.Properties.RequestID, LogID: w.Properties.LogID,
		},
	}
	if err := json.Unmarshal([]byte(w.Identity), &r.Identity); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(w.Properties.RequestParams), &r.Properties.RequestParams); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(w.Properties.Response), &r.Properties.Response); err != nil {
		return nil, err
	}
	return r, nil
}

// ContainerPrefix begins the name of every category's container.
const ContainerPrefix = "insights-logs-"

// Container is the storage container, and the event hub, of a category:
// insights-logs-<category>, lower-cased as Azure names containers.
func Container(category string) string {
	return ContainerPrefix + lower(category)
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
