// streamhost's stand-in for go.bytecodealliance.org/pkg, the module that the Go bindings
// of wit-bindgen 0.61 import and that no package registry reachable here serves. It holds
// only what those bindings use: the WIT option, result and tuple types (wit/types) and
// the allocator the host calls into (wit/runtime). The project's go.mod points the
// import path here with a replace directive.
module go.bytecodealliance.org/pkg

go 1.25
