//go:build wasip1

// Command webhookfilter is an example webhook plugin: it drops the event
// codes a tenant does not care about, adds the item's context (user, state;
// never the access token) under "safeclose", and forwards the result to one
// configured destination.
//
//	config:
//	  drop_codes: [SYNC_UPDATES_AVAILABLE]
//	  forward_to: app          # a destination name from the tenant's forward list
//	capabilities: [config]
package main

import (
	"encoding/json"
	"slices"

	"github.com/safeclose/safeclose/plugins/sdk"
)

type config struct {
	DropCodes []string `json:"drop_codes"`
	ForwardTo string   `json:"forward_to"`
}

//go:wasmexport event_handle
func eventHandle() int32 {
	var c config
	if err := sdk.DecodeConfig(&c); err != nil {
		return -1 // an invalid result: the host retries and then dead-letters
	}
	var ev map[string]any
	if err := json.Unmarshal(sdk.Event(), &ev); err != nil {
		return -1
	}
	if code, _ := ev["webhook_code"].(string); slices.Contains(c.DropCodes, code) {
		return sdk.Drop
	}
	item, err := sdk.Item()
	if err != nil {
		return -1
	}
	ev["safeclose"] = map[string]string{"tenant": item.Tenant, "user": item.User, "item_state": item.ItemState}
	b, err := json.Marshal(ev)
	if err != nil || sdk.SetPayload(b) != nil {
		return -1
	}
	if c.ForwardTo == "" {
		return sdk.Keep
	}
	if sdk.ForwardTo(c.ForwardTo) != nil {
		return -1
	}
	return sdk.Forward
}
