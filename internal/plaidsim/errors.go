package plaidsim

import "net/http"

// apiError is Plaid's error object with the HTTP status Plaid uses for it.
type apiError struct {
	status  int
	Type    string  `json:"error_type"`
	Code    string  `json:"error_code"`
	Message string  `json:"error_message"`
	Display *string `json:"display_message"`
}

func (e *apiError) Error() string { return e.Type + "/" + e.Code + ": " + e.Message }

func perr(status int, typ, code, msg string) *apiError {
	return &apiError{status: status, Type: typ, Code: code, Message: msg}
}

var (
	errInvalidBody = func() *apiError {
		return perr(http.StatusBadRequest, "INVALID_REQUEST", "INVALID_BODY", "body could not be parsed as JSON")
	}
	errAPIKeys = func() *apiError {
		return perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_API_KEYS", "invalid client_id or secret provided")
	}
	errAccessToken = func() *apiError {
		return perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_ACCESS_TOKEN", "could not find matching access token")
	}
	errPublicToken = func() *apiError {
		return perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN", "could not find matching public token")
	}
	errLinkToken = func() *apiError {
		return perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_LINK_TOKEN", "invalid link_token provided")
	}
	errKeyID = func() *apiError {
		return perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
			"invalid key_id provided. note that key_ids are specific to Plaid environments, and verification requests must be made to the same environment that the webhook was sent from")
	}
	errInstitution = func() *apiError {
		return perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_INSTITUTION", "invalid institution_id provided")
	}
	errLoginRequired = func() *apiError {
		return perr(http.StatusBadRequest, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED",
			"the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information. use Link's update mode to restore the item to a good state")
	}
	errWebhookInvalid = func() *apiError {
		return perr(http.StatusBadRequest, "SANDBOX_ERROR", "SANDBOX_WEBHOOK_INVALID",
			"Webhook for this item is either not set up, or invalid. Please update the item's webhook and try again.")
	}
	errProductNotEnabled = func() *apiError {
		return perr(http.StatusBadRequest, "SANDBOX_ERROR", "SANDBOX_PRODUCT_NOT_ENABLED",
			"The Item does not have the product required to fire this webhook.")
	}
)

func missingFields(names string) *apiError {
	return perr(http.StatusBadRequest, "INVALID_REQUEST", "MISSING_FIELDS", "the following required fields are missing: "+names)
}

func invalidField(msg string) *apiError {
	return perr(http.StatusBadRequest, "INVALID_REQUEST", "INVALID_FIELD", msg)
}
