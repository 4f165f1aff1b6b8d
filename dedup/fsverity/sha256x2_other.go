//go:build !amd64 || purego

package fsverity

// useX2 is false where there is no two-lane block function.
const useX2 = false

// sum2 is never called where useX2 is false.
func sum2(a, b []byte) (da, db [Size]byte) {
	panic("fsverity: sum2 without a two-lane implementation")
}
