// The OpenAPI 3.1 description of what `glmpipe serve` serves (GET /openapi.json). The text is
// launcher/openapi.json, embedded at build time; tests/pipeline/openai_api_test.cpp keeps it true
// (every documented path answers, every documented request field is checked, every sampling field
// the server reads is documented).
#pragma once

namespace glmpipe {

const char* openapi_json();

}  // namespace glmpipe
