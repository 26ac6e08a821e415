module wit_component

go 1.25

require go.bytecodealliance.org/pkg v0.2.3

// The module the generated bindings import is the small stand-in in witgo/: no registry
// serves it offline, and it holds only what the bindings use.
replace go.bytecodealliance.org/pkg => ./witgo
