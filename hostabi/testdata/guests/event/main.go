// Guest event: drops SYNC_UPDATES_AVAILABLE, enriches ITEM events with the
// item context and forwards them to "app", keeps the rest. For
// TEST_BAD_FORWARD it names a destination add_forward refuses, ignores the
// refusal and answers Forward (a careless plugin).
package main

import (
	"encoding/json"

	"github.com/safeclose/safeclose/plugins/sdk"
)

//go:wasmexport event_handle
func eventHandle() int32 {
	var ev map[string]any
	if err := json.Unmarshal(sdk.Event(), &ev); err != nil {
		return 99
	}
	switch ev["webhook_code"] {
	case "SYNC_UPDATES_AVAILABLE":
		return sdk.Drop
	case "ERROR", "PENDING_EXPIRATION", "LOGIN_REPAIRED":
		item, err := sdk.Item()
		if err != nil {
			return 98
		}
		ev["safeclose_user"] = item.User
		ev["safeclose_item_state"] = item.ItemState
		b, _ := json.Marshal(ev)
		if sdk.SetPayload(b) != nil || sdk.ForwardTo("app") != nil {
			return 97
		}
		return sdk.Forward
	case "TEST_BAD_FORWARD":
		_ = sdk.ForwardTo("bad\nname")
		return sdk.Forward
	}
	return sdk.Keep
}

func main() {}
