/**
 * Gateway to the terminal table renderer (cli-table3).
 *
 * @module
 */
import Table from "cli-table3";
export { Table };
