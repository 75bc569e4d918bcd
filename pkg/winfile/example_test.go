package winfile_test

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Write a file's backup stream (security descriptor, content and one
// alternate data stream), then read it back.
func Example() {
	nullSD := []byte{1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	streams := []struct {
		hdr  winfile.StreamHeader
		data []byte
	}{
		{winfile.StreamHeader{ID: winfile.StreamSecurityData, Attributes: winfile.StreamAttrContainsSecurity, Size: int64(len(nullSD))}, nullSD},
		{winfile.StreamHeader{ID: winfile.StreamData, Size: 5}, []byte("hello")},
		{winfile.StreamHeader{ID: winfile.StreamAlternateData, Name: ":Zone.Identifier:$DATA", Size: 7}, []byte("ZoneId3")},
	}

	var buf bytes.Buffer
	bw := winfile.NewBackupWriter(&buf)
	for _, s := range streams {
		if err := bw.WriteHeader(&s.hdr); err != nil {
			panic(err)
		}
		if _, err := bw.Write(s.data); err != nil {
			panic(err)
		}
	}
	if err := bw.Close(); err != nil {
		panic(err)
	}
	fmt.Println("bytes:", buf.Len())

	br := winfile.NewBackupReader(&buf)
	for {
		h, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		payload, err := io.ReadAll(br)
		if err != nil {
			panic(err)
		}
		switch h.ID {
		case winfile.StreamSecurityData:
			sddl, err := winfile.SDDL(payload)
			if err != nil {
				panic(err)
			}
			fmt.Printf("%s %s\n", h.ID, sddl)
		default:
			fmt.Printf("%s %q %q\n", h.ID, h.Name, payload)
		}
	}
	// Output:
	// bytes: 136
	// SECURITY_DATA D:NO_ACCESS_CONTROL
	// DATA "" "hello"
	// ALTERNATE_DATA ":Zone.Identifier:$DATA" "ZoneId3"
}

func ExampleNewLinkReparsePoint() {
	rp := winfile.NewLinkReparsePoint(`C:\Program Files\app`, false)
	b, err := rp.Encode()
	if err != nil {
		panic(err)
	}
	back, err := winfile.DecodeReparsePoint(b)
	if err != nil {
		panic(err)
	}
	fmt.Println(back.SubstituteName)
	fmt.Println(back.Target(), back.Flags&winfile.SymlinkFlagRelative != 0)

	rel := winfile.NewLinkReparsePoint(`..\lib`, false)
	fmt.Println(rel.SubstituteName, rel.Flags&winfile.SymlinkFlagRelative != 0)
	// Output:
	// \??\C:\Program Files\app
	// C:\Program Files\app false
	// ..\lib true
}

func ExampleEncodeExtendedAttributes() {
	b, err := winfile.EncodeExtendedAttributes([]winfile.ExtendedAttribute{{Name: "TEST", Value: []byte("hi")}})
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", b)
	eas, _ := winfile.DecodeExtendedAttributes(b)
	fmt.Printf("%s=%s\n", eas[0].Name, eas[0].Value)
	// Output:
	// 00 00 00 00 00 04 02 00 54 45 53 54 00 68 69 00
	// TEST=hi
}

func ExampleNewFiletime() {
	ft := winfile.NewFiletime(time.Date(2024, 2, 29, 12, 30, 45, 123456789, time.UTC))
	fmt.Println(uint64(ft))
	fmt.Println(ft.Time())
	fmt.Println(winfile.AttributeString(winfile.AttrDirectory | winfile.AttrArchive))
	// Output:
	// 133536834451234567
	// 2024-02-29 12:30:45.1234567 +0000 UTC
	// DIRECTORY|ARCHIVE
}

func ExampleSDDL() {
	// O:SY with an empty, protected DACL.
	sd := []byte{
		1, 0, 0x04, 0x90, // revision, sbz1, control SELF_RELATIVE|DACL_PROTECTED|DACL_PRESENT
		20, 0, 0, 0, // owner at 20
		0, 0, 0, 0, // no group
		0, 0, 0, 0, // no SACL
		32, 0, 0, 0, // DACL at 32
		1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0, // S-1-5-18
		2, 0, 8, 0, 0, 0, 0, 0, // ACL revision 2, size 8, no ACEs
	}
	s, err := winfile.SDDL(sd)
	if err != nil {
		panic(err)
	}
	fmt.Println(s)
	// Output: O:SYD:P
}
