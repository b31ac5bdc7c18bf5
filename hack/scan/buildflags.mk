# Read by hack/scan/scan.sh together with app/Makefile (make -f Makefile -f this):
# prints app/Makefile's release BUILD_FLAGS, so the scanned twin binary follows them.
.PHONY: scan-build-flags
scan-build-flags:
	$(info $(BUILD_FLAGS))@true
