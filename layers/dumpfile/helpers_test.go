package dumpfile

type namedFile struct {
	name string
	data []byte
}
