import { backends } from "../support/backends.ts"
import { storeContract } from "./contract.ts"

for (const backend of backends) storeContract(backend)
