package v1alpha1

// This file holds the types that more than one kind uses.

// TLSVersion is a TLS protocol version. Versions below 1.2 are not accepted:
// TLS 1.0 and 1.1 are deprecated by RFC 8996.
// +kubebuilder:validation:Enum="1.2";"1.3"
type TLSVersion string

const (
	// TLSVersion12 is TLS 1.2.
	TLSVersion12 TLSVersion = "1.2"
	// TLSVersion13 is TLS 1.3.
	TLSVersion13 TLSVersion = "1.3"
)

// AuthenticationMethod is a way a client proves who it is.
// +kubebuilder:validation:Enum=APIKey;JWT;MTLS
type AuthenticationMethod string

const (
	// AuthenticationMethodAPIKey is an API key issued by an APIKeySet and sent
	// in a request header (never in the query string).
	AuthenticationMethodAPIKey AuthenticationMethod = "APIKey"
	// AuthenticationMethodJWT is a JSON Web Token from an OIDC/OAuth2 issuer.
	AuthenticationMethodJWT AuthenticationMethod = "JWT"
	// AuthenticationMethodMTLS is a client certificate verified during the TLS
	// handshake.
	AuthenticationMethodMTLS AuthenticationMethod = "MTLS"
)

// RateLimitUnit is the period a request count applies to.
// +kubebuilder:validation:Enum=Second;Minute;Hour;Day
type RateLimitUnit string

const (
	// RateLimitUnitSecond counts requests per second.
	RateLimitUnitSecond RateLimitUnit = "Second"
	// RateLimitUnitMinute counts requests per minute.
	RateLimitUnitMinute RateLimitUnit = "Minute"
	// RateLimitUnitHour counts requests per hour.
	RateLimitUnitHour RateLimitUnit = "Hour"
	// RateLimitUnitDay counts requests per day.
	RateLimitUnitDay RateLimitUnit = "Day"
)

// Seconds returns the length of the unit in seconds, or 0 for an unknown unit.
func (u RateLimitUnit) Seconds() int64 {
	switch u {
	case RateLimitUnitSecond:
		return 1
	case RateLimitUnitMinute:
		return 60
	case RateLimitUnitHour:
		return 3600
	case RateLimitUnitDay:
		return 86400
	}
	return 0
}

// HTTPMethod is an HTTP request method.
// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
type HTTPMethod string

// RequestRate is a number of requests per unit of time.
type RequestRate struct {
	// requests is the number of requests allowed per unit. It must be at least 1.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Requests int32 `json:"requests"`

	// unit is the period the request count applies to: Second, Minute, Hour or Day.
	// +required
	Unit RateLimitUnit `json:"unit"`
}

// PerSecond returns the rate as requests per second.
func (r RequestRate) PerSecond() float64 {
	s := r.Unit.Seconds()
	if s == 0 {
		return 0
	}
	return float64(r.Requests) / float64(s)
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// name is the name of the object, in the namespace of the referring object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// ClaimRequirement matches a JWT claim against a set of accepted values.
type ClaimRequirement struct {
	// name is the claim name. Nested claims are written with dots, for example
	// "realm_access.roles".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_:/.-]+$`
	Name string `json:"name"`

	// values lists the accepted values. The requirement holds when the claim
	// equals one of them or, for an array claim, contains one of them.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	Values []string `json:"values"`
}
