package release

// ParseOperatorManifest exposes manifest parsing to the fuzz target.
var ParseOperatorManifest = parseOperatorManifest

// ParseCRManifest vets kubevirt-cr.yaml.
var ParseCRManifest = parseCRManifest
