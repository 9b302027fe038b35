// Generates TypeScript types from the served OpenAPI document with
// openapi-typescript, as a frontend would: `binary` parts become `Blob`s
// (the tool's documented transform), so an upload's body is typed too.
//   node generate.mjs <openapi.json> <out.d.ts>
import fs from "node:fs";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";

const [source, target] = process.argv.slice(2);
const blob = ts.factory.createTypeReferenceNode(ts.factory.createIdentifier("Blob"));
const ast = await openapiTS(new URL(source, `file://${process.cwd()}/`), {
  transform(schema) {
    if (schema.format === "binary") {
      return blob;
    }
  },
});
fs.writeFileSync(target, astToString(ast));
