// Guest event (AssemblyScript): the Go guest testdata/guests/event, ported.
// Drops SYNC_UPDATES_AVAILABLE, enriches ITEM events with the item context
// and forwards them to "app", keeps the rest.
import * as sdk from "../../../plugins/sdk-as/assembly";

export function event_handle(): i32 {
  const b = sdk.eventBytes();
  const ev = sdk.parseJSON(b.ptr, b.len);
  if (ev == null || !ev.isObject()) return 99;
  const text = b.toString();
  const code = ev.str("webhook_code", "");
  if (code == "SYNC_UPDATES_AVAILABLE") return sdk.Drop;
  if (code == "ERROR" || code == "PENDING_EXPIRATION" || code == "LOGIN_REPAIRED") {
    const ib = sdk.itemBytes();
    const item = sdk.parseJSON(ib.ptr, ib.len);
    if (item == null || !item.isObject()) return 98;
    // The event with two members added before its closing brace.
    const end = text.lastIndexOf("}");
    const sep = ev.keys.length > 0 ? "," : "";
    const payload = text.substring(0, end) + sep +
      "\"safeclose_user\":" + sdk.quoteJSON(item.str("user", "")) +
      ",\"safeclose_item_state\":" + sdk.quoteJSON(item.str("item_state", "")) + "}";
    if (!sdk.setPayloadString(payload) || !sdk.forwardTo("app")) return 97;
    return sdk.Forward;
  }
  return sdk.Keep;
}
