package gateway_test

import (
	"net/http"
	"testing"
)

func checkOpenAPI(t *testing.T, req *http.Request, resp *http.Response, body []byte) {}
