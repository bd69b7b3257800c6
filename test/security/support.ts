import { generateKey, configEntry } from "../../src/security/keys.js";

/** A predict key and an admin key, and the API_KEYS value enabling both. */
export function testKeys() {
  const predict = generateKey();
  const admin = generateKey();
  return {
    predict,
    admin,
    env: {
      AUTH_DISABLED: "false",
      API_KEYS: `${configEntry(predict, "predict", "test-predict")},${configEntry(admin, "admin", "test-admin")}`,
    },
  };
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
