package resilienceotel

import (
	"context"
	"errors"
	"fmt"
	"reflect"
)

// OtherErrorType is the error.type of an error that has no type of its own
// to tell: one made by errors.New or fmt.Errorf, or a join of several. It is
// OpenTelemetry's value for "none of the known values".
const OtherErrorType = "_OTHER"

var (
	typeErrorString = reflect.TypeOf(errors.New(""))
	typeWrapError   = reflect.TypeOf(fmt.Errorf("%w", errors.New("")))
	typeWrapErrors  = reflect.TypeOf(fmt.Errorf("%w%w", errors.New(""), errors.New("")))
	typeJoinError   = reflect.TypeOf(errors.Join(errors.New("")))
)

// ErrorType returns the value of the error.type attribute for err: a name
// from a small set that is fixed by the program's code, never the error's
// message. It is the default of [WithErrorType].
//
//   - "" for nil;
//   - "context.Canceled" and "context.DeadlineExceeded" for those errors;
//   - for an error that fmt.Errorf wrapped with a single %w, the type of the
//     error inside, unwrapped as long as fmt.Errorf wrapped it;
//   - [OtherErrorType] for an error made by errors.New or fmt.Errorf without
//     %w (every sentinel such as io.EOF, and any error with a dynamic
//     message), and for a join of several errors;
//   - otherwise the Go type of the error, as fmt's %T prints it, such as
//     "*net.OpError", "*circuitbreaker.OpenError" or "*retry.ExhaustedError".
//
// It allocates nothing.
func ErrorType(err error) string {
	if err == nil {
		return ""
	}
	for err != nil {
		switch err {
		case context.Canceled:
			return "context.Canceled"
		case context.DeadlineExceeded:
			return "context.DeadlineExceeded"
		}
		switch t := reflect.TypeOf(err); t {
		case typeWrapError:
			err = errors.Unwrap(err)
		case typeErrorString, typeWrapErrors, typeJoinError:
			return OtherErrorType
		default:
			return t.String()
		}
	}
	return OtherErrorType // fmt.Errorf("%w", nil)
}
