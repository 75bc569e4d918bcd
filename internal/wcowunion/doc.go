// Package wcowunion turns Windows layer folders (package winlayer's form) into
// the parts of an overlayfs union: each layer's Files/ folder is a lower
// directory, and the names a layer deletes from its parents (its
// tombstones.txt) become a directory of overlay whiteouts stacked right below
// it. Packages layers and wclayer build their unions with it.
package wcowunion
