package natsoutbox

// AckError and DecodeAck let the benchmarks compare ackError, with its fast
// path, to decoding every acknowledgement in full.
var (
	AckError  = ackError
	DecodeAck = decodeAck
)
