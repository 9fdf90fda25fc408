package dataverse_test

import (
	"fmt"

	"dvbulk/internal/dataverse"
)

func ExampleLiteral() {
	filter := "statecode eq 0 and name eq " + dataverse.Literal("O'Brien")
	fmt.Println(filter)
	// Output: statecode eq 0 and name eq 'O''Brien'
}

func ExampleParseID() {
	id, err := dataverse.ParseID("0F8FAD5B-D9CB-469F-A165-70867728950E")
	fmt.Println(id, err)
	_, err = dataverse.ParseID("{0f8fad5b-d9cb-469f-a165-70867728950e}")
	fmt.Println(err != nil)
	// Output:
	// 0f8fad5b-d9cb-469f-a165-70867728950e <nil>
	// true
}
