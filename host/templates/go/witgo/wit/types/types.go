// Package types holds the Go forms of the WIT types that have no Go equivalent: option,
// result, tuples and the empty result payload.
package types

// Unit is the payload of a WIT result without one, as in `result<_, string>`.
type Unit struct{}

// The tags of an Option.
const (
	OptionNone = 0
	OptionSome = 1
)

// Option is WIT's `option<T>`.
type Option[T any] struct {
	tag   uint8
	value T
}

// None is the empty option.
func None[T any]() Option[T] { return Option[T]{tag: OptionNone} }

// Some is the option holding value.
func Some[T any](value T) Option[T] { return Option[T]{tag: OptionSome, value: value} }

// Tag is OptionNone or OptionSome.
func (o Option[T]) Tag() uint8 { return o.tag }

// IsSome says whether the option holds a value.
func (o Option[T]) IsSome() bool { return o.tag == OptionSome }

// IsNone says whether the option is empty.
func (o Option[T]) IsNone() bool { return o.tag == OptionNone }

// Some returns the value; it panics on an empty option (check IsSome, or use SomeOr).
func (o Option[T]) Some() T {
	if o.tag != OptionSome {
		panic("Some() of an empty option")
	}
	return o.value
}

// SomeOr returns the value, or fallback for an empty option.
func (o Option[T]) SomeOr(fallback T) T {
	if o.tag != OptionSome {
		return fallback
	}
	return o.value
}

// The tags of a Result.
const (
	ResultOk  = 0
	ResultErr = 1
)

// Result is WIT's `result<T, E>`.
type Result[T, E any] struct {
	tag uint8
	ok  T
	err E
}

// Ok is the success holding value.
func Ok[T, E any](value T) Result[T, E] { return Result[T, E]{tag: ResultOk, ok: value} }

// Err is the failure holding err.
func Err[T, E any](err E) Result[T, E] { return Result[T, E]{tag: ResultErr, err: err} }

// Tag is ResultOk or ResultErr.
func (r Result[T, E]) Tag() uint8 { return r.tag }

// IsOk says whether the result is a success.
func (r Result[T, E]) IsOk() bool { return r.tag == ResultOk }

// IsErr says whether the result is a failure.
func (r Result[T, E]) IsErr() bool { return r.tag == ResultErr }

// Ok returns the success value; it panics on a failure.
func (r Result[T, E]) Ok() T {
	if r.tag != ResultOk {
		panic("Ok() of a failed result")
	}
	return r.ok
}

// Err returns the failure value; it panics on a success.
func (r Result[T, E]) Err() E {
	if r.tag != ResultErr {
		panic("Err() of a successful result")
	}
	return r.err
}

// Tuple2 is WIT's `tuple<A, B>`.
type Tuple2[A, B any] struct {
	F0 A
	F1 B
}

// Tuple3 is WIT's `tuple<A, B, C>`.
type Tuple3[A, B, C any] struct {
	F0 A
	F1 B
	F2 C
}

// Tuple4 is WIT's `tuple<A, B, C, D>`.
type Tuple4[A, B, C, D any] struct {
	F0 A
	F1 B
	F2 C
	F3 D
}
