module wit_component

go 1.25

require go.bytecodealliance.org/pkg v0.2.3

// The bindings' runtime module is ours (see its go.mod): no registry here serves it.
replace go.bytecodealliance.org/pkg => ../../../host/templates/go/witgo
