//! The OpenAPI 3 description served at `/v1/openapi.json`.

use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "4XX": {"description": "Refused; nothing was recorded.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "503": {"description": "The store is unavailable; nothing was issued.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    })
}

fn with_errors(ok: Value) -> Value {
    let mut r = error_responses();
    if let (Some(map), Some(ok)) = (r.as_object_mut(), ok.as_object()) {
        for (k, v) in ok {
            map.insert(k.clone(), v.clone());
        }
    }
    r
}

pub fn document() -> Value {
    let issued = json!({"200": {"description": "The certificate chain.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Issued"}}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Symbolon CA", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Enrollment with one-time tokens, renewal over mTLS, revocation and CRLs. Endpoints marked mTLS need a client certificate issued by this CA; admin endpoints need one named in ca.toml `admins`."},
        "paths": {
            "/v1/enroll": {"post": {"summary": "Exchange a one-time token and a CSR for a certificate.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EnrollRequest"}}}},
                "responses": with_errors(issued.clone())}},
            "/v1/renew": {"post": {"summary": "Renew the presented (mTLS) certificate for the same identity, with a new key.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RenewRequest"}}}},
                "responses": with_errors(issued)}},
            "/v1/revoke": {"post": {"summary": "Revoke a certificate (admin, or the certificate itself over mTLS).",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RevokeRequest"}}}},
                "responses": with_errors(json!({"200": {"description": "Revoked (or already revoked); the CRL was regenerated."}}))}},
            "/v1/tokens": {"post": {"summary": "Create a one-time enrollment token (admin).",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}}},
                "responses": with_errors(json!({"200": {"description": "The token and its expiry."}}))}},
            "/v1/crl": {"get": {"summary": "The current CRL (DER).",
                "responses": {"200": {"description": "CRL", "content": {"application/pkix-crl": {}}}}}},
            "/v1/ocsp": {"post": {"summary": "OCSP (RFC 6960): DER OCSPRequest in, signed OCSPResponse out.",
                "requestBody": {"required": true, "content": {"application/ocsp-request": {}}},
                "responses": {"200": {"description": "OCSPResponse", "content": {"application/ocsp-response": {}}}}}},
            "/v1/ocsp/{request}": {"get": {"summary": "OCSP over GET: the base64 DER request in the path.",
                "parameters": [{"name": "request", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OCSPResponse", "content": {"application/ocsp-response": {}}}}}},
            "/v1/revocations/feed": {"get": {"summary": "Revocations as server-sent events: `snapshot` (the full current set), then `revoked` (new entries) and `heartbeat` every second, each with the revocation number.",
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}}},
            "/v1/roots": {"get": {"summary": "The trust bundle (PEM).",
                "responses": {"200": {"description": "Root certificate(s)", "content": {"application/x-pem-file": {}}}}}},
            "/v1/certificates": {"get": {"summary": "Issued certificates (admin).",
                "parameters": [
                    {"name": "expiring_within", "in": "query", "schema": {"type": "string", "example": "7d"}},
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["valid", "expired", "revoked"]}}
                ],
                "responses": with_errors(json!({"200": {"description": "Certificates, soonest expiry first."}}))}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["reason", "message"], "properties": {
                "reason": {"type": "string", "example": "token_used"}, "message": {"type": "string"}}},
            "EnrollRequest": {"type": "object", "required": ["token", "csr"], "additionalProperties": false, "properties": {
                "token": {"type": "string"}, "csr": {"type": "string", "description": "PEM PKCS#10"}}},
            "RenewRequest": {"type": "object", "required": ["csr"], "additionalProperties": false, "properties": {
                "csr": {"type": "string", "description": "PEM PKCS#10"}}},
            "RevokeRequest": {"type": "object", "required": ["serial"], "additionalProperties": false, "properties": {
                "serial": {"type": "string"}, "reason": {"type": "string", "enum": ["unspecified", "keyCompromise", "caCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold"]}}},
            "TokenRequest": {"type": "object", "required": ["identities"], "additionalProperties": false, "properties": {
                "identities": {"type": "array", "items": {"type": "string", "example": "spiffe://example.org/device/17"}},
                "ttl": {"type": "string", "example": "15m"}}},
            "Issued": {"type": "object", "properties": {
                "certificate": {"type": "string", "description": "Leaf then intermediate, PEM"},
                "ca": {"type": "string", "description": "Root, PEM"},
                "serial": {"type": "string"}, "not_after": {"type": "string", "format": "date-time"}}}
        }}
    })
}
