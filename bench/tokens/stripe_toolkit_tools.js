// Prints the OpenAI tool definitions of @stripe/agent-toolkit (the last version with hard-coded
// tools), produced by the package's own code (its zod schemas through zod-to-json-schema).
// Usage: NODE_PATH=<prefix>/node_modules node stripe_toolkit_tools.js > stripe_tools.json
const { StripeAgentToolkit } = require("@stripe/agent-toolkit/openai");
const all = { create: true, read: true, update: true };
const actions = {};
for (const r of ["customers", "products", "prices", "paymentLinks", "invoices", "invoiceItems",
  "balance", "coupons", "refunds", "paymentIntents", "subscriptions", "documentation", "disputes"]) {
  actions[r] = all;
}
const toolkit = new StripeAgentToolkit({ secretKey: "sk_test_offline", configuration: { actions } });
process.stdout.write(JSON.stringify(toolkit.getTools(), null, 0) + "\n");
