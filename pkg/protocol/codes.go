package protocol

// Error codes carried in the "code" member of an error frame.
const (
	// CodeBadRequest: malformed JSON, unknown type, missing field, invalid
	// room name or id, invalid UTF-8.
	CodeBadRequest = "bad_request"
	// CodeUnauthorized: no valid hello yet, or a bad token.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the user may not do this.
	CodeForbidden = "forbidden"
	// CodeNotFound: the thing asked for does not exist.
	CodeNotFound = "not_found"
	// CodeTooLarge: a message body over the limit.
	CodeTooLarge = "too_large"
	// CodeRateLimited: the connection sends faster than its allowance.
	CodeRateLimited = "rate_limited"
	// CodeUnavailable: the message store is unreachable; retry later.
	CodeUnavailable = "unavailable"
	// CodeInternal: a bug; the gateway logged it.
	CodeInternal = "internal"
)

// WebSocket close codes the gateway uses (RFC 6455, section 7.4.1).
const (
	CloseNormal          = 1000 // normal closure
	ClosePolicy          = 1008 // auth failure, no hello in time, flood
	CloseTooBig          = 1009 // a frame over the size limit
	CloseInternal        = 1011 // internal error
	CloseServiceRestart  = 1012 // gateway draining: reconnect and resume
	CloseTryAgainLater   = 1013 // slow consumer or overload: reconnect and resume
	CloseUnsupportedData = 1003 // binary frame or invalid UTF-8 in plain-text mode
)
