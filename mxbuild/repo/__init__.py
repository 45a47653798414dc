"""The apt repository: index generation, signing, storage backends, publish protocol."""
